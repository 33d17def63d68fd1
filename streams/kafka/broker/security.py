"""A secured local cluster (`adp kafka up --secure`): TLS from a CA made here with openssl,
SASL/SCRAM users, the StandardAuthorizer, and one user per platform role with its ACLs.

Everything lives in the cluster's folder, readable only by its owner:

    tls/ca.pem, tls/ca.key          the CA (clients trust ca.pem)
    tls/broker.pem                  the brokers' key and certificate (SAN: the host, localhost,
                                    127.0.0.1), a PEM keystore as Kafka reads it
    users.json                      user -> (role, password), generated
    clients/<user>.toml             a complete client config file for each user:
                                    adp <command> --config clients/runtime.toml

Clients reach the brokers on a SASL_SSL listener; the KRaft controller listener stays PLAINTEXT
on the loopback address (SCRAM cannot authenticate controllers: their credentials live in the
metadata log they serve), so its principal User:ANONYMOUS is a super user beside `admin`, and the
listener never leaves the host.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from adp.core.errors import AdpError
from adp.core.settings import Settings
from adp.streams.kafka.authz import ROLES

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
# one user per role, named after it, plus the super user the brokers and `adp kafka up` use
DEFAULT_USERS = {ADMIN: "admin", **{role: role for role in ROLES}}


class SecurityError(AdpError):
    pass


@dataclass
class ClusterSecurity:
    dir: Path  # the cluster's folder

    @property
    def tls(self) -> Path:
        return self.dir / "tls"

    @property
    def enabled(self) -> bool:
        return (self.dir / "users.json").exists()

    def users(self) -> dict[str, dict[str, str]]:
        return json.loads((self.dir / "users.json").read_text())

    def client_config(self, user: str = ADMIN) -> Path:
        return self.dir / "clients" / f"{user}.toml"

    def prepare(self, host: str, users: dict[str, str] | None = None) -> None:
        """Make the CA, the broker certificate, the users and their client configs, once."""
        if self.enabled:
            return
        _private_dir(self.dir)
        _private_dir(self.tls)
        _make_ca_and_broker_cert(self.tls, host)
        table = {
            name: {"role": role, "password": secrets.token_urlsafe(24)}
            for name, role in (users or DEFAULT_USERS).items()
        }
        table.setdefault(ADMIN, {"role": "admin", "password": secrets.token_urlsafe(24)})
        _private_dir(self.dir / "clients")
        _write_private(self.dir / "users.json", json.dumps(table, indent=1))

    def write_client_configs(self, bootstrap: str) -> None:
        for name, entry in self.users().items():
            _write_private(
                self.client_config(name),
                "\n".join(
                    [
                        f"# adp client settings for user {name} (role {entry['role']}); "
                        f"use: adp <command> --config {self.client_config(name)}",
                        f'bootstrap = "{bootstrap}"',
                        'security_protocol = "SASL_SSL"',
                        f'sasl_mechanism = "{MECHANISM}"',
                        f'sasl_username = "{name}"',
                        f'sasl_password = "{entry["password"]}"',
                        'ssl_cafile = "../tls/ca.pem"',
                        "",
                    ]
                ),
            )

    def client_settings(self, bootstrap: str, user: str = ADMIN) -> Settings:
        entry = self.users()[user]
        return Settings(
            bootstrap=bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism=MECHANISM,
            sasl_username=user,
            sasl_password=entry["password"],
            ssl_cafile=self.tls / "ca.pem",
        )

    def scram_arguments(self) -> list[str]:
        """kafka-storage format arguments that create every user (both SCRAM variants). The
        passwords are on that short-lived command line only, never in a log."""
        args = []
        for name, entry in self.users().items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                args += ["--add-scram", f"{mechanism}=[name={name},password={entry['password']}]"]
        return args

    def broker_properties(self, host: str, port: int, controller_port: int) -> list[str]:
        admin_password = self.users()[ADMIN]["password"]
        jaas = (
            f"org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{admin_password}";'
        )
        return [
            f"listeners=SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
            f"advertised.listeners=SASL_SSL://{host}:{port}",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=SASL_SSL",
            "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            # each enabled mechanism needs its own login entry on the listener
            f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={jaas}",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.tls / 'broker.pem'}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.tls / 'ca.pem'}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:{ADMIN};User:ANONYMOUS",
        ]


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SecurityError(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def _make_ca_and_broker_cert(tls: Path, host: str) -> None:
    """A CA and a broker certificate signed by it, valid for `host`, localhost and 127.0.0.1."""
    names = {"DNS:localhost", "IP:127.0.0.1"}
    names.add(f"IP:{host}" if host.replace(".", "").isdigit() or ":" in host else f"DNS:{host}")
    (tls / "san.cnf").write_text(f"subjectAltName={','.join(sorted(names))}\n")
    _make_ca(tls)
    _make_broker_cert(tls, host)
    key = (tls / "broker.key").read_text()
    _write_private(tls / "broker.pem", key + (tls / "broker.crt").read_text())
    for name in ("ca.key", "broker.key"):
        os.chmod(tls / name, 0o600)
    for name in ("broker.csr", "san.cnf"):
        (tls / name).unlink()


def _make_ca(tls: Path) -> None:
    """ca.key and the self-signed ca.pem, valid ten years."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "3650",
        "-subj",
        "/CN=adp local CA",
        cwd=tls,
    )


def _make_broker_cert(tls: Path, host: str) -> None:
    """broker.key and broker.crt, signed by the CA for the names in san.cnf."""
    # PKCS#8 key (what Kafka's PEM keystore reads), unencrypted: the file is the secret (0600)
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "broker.key",
        "-out",
        "broker.csr",
        "-subj",
        f"/CN={host}",
        cwd=tls,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "broker.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "broker.crt",
        "-days",
        "825",
        "-extfile",
        "san.cnf",
        cwd=tls,
    )
