"""One settings class (core/settings.py) and one Kafka client factory (streams/kafka/clients.py):
the precedence of flags, environment and config file; the settings table of docs/configuration.md;
secrets that never print; how the factory turns settings into aiokafka and Faust options; the
shared click options."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from adp.app.cli import COMMANDS, main
from adp.core.settings import Settings, SettingsError, settings, settings_table
from adp.streams.kafka import clients

ROOT = Path(__file__).resolve().parents[1]
# every command that talks to Kafka; `adp kafka` has them on its subcommands
KAFKA_COMMANDS = [
    ["produce"],
    ["runtime"],
    ["aggregate"],
    ["tail"],
    ["replay"],
    ["status"],
    ["dlq"],
    ["topics", "describe"],
    ["kafka", "up"],
    ["kafka", "status"],
    ["console"],
    ["verify"],
    ["export"],
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(f"ADP_{name.upper()}", raising=False)


def test_configuration_page_holds_the_settings_class():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert settings_table() in page, (
        "docs/configuration.md's settings table is stale: run `python -m adp.app.reference`"
    )
    for name in Settings.model_fields:
        assert f"| `{name}` | `ADP_{name.upper()}` |" in page, name


def test_flags_over_environment_over_file_over_defaults(tmp_path, monkeypatch):
    config = tmp_path / "conf" / "adp.toml"
    config.parent.mkdir()
    config.write_text(
        'bootstrap = "file:1"\nmetrics_port = 9100\nclient_id = "from-file"\n'
        'ssl_cafile = "certs/ca.pem"\nhome = "state"\n'
    )
    assert settings().bootstrap == "127.0.0.1:9092"
    monkeypatch.setenv("ADP_CONFIG", str(config))
    s = settings()
    assert (s.bootstrap, s.metrics_port, s.client_id) == ("file:1", 9100, "from-file")
    # relative paths in the file are relative to the file
    assert s.ssl_cafile == config.parent / "certs" / "ca.pem"
    assert s.home == config.parent / "state"
    monkeypatch.setenv("ADP_BOOTSTRAP", "env:2")
    assert settings().bootstrap == "env:2" and settings().metrics_port == 9100
    assert settings(bootstrap="flag:3").bootstrap == "flag:3"
    assert settings(bootstrap=None).bootstrap == "env:2"  # a flag not given is no override
    other = tmp_path / "other.toml"
    other.write_text("metrics_port = 9200\n")
    assert settings(config=other).metrics_port == 9200  # --config beats ADP_CONFIG


@pytest.mark.parametrize(
    "content, message",
    [
        ('bootstrap = "x:1"\nbootstarp = "typo:1"\n', "unknown setting(s) bootstarp"),
        ("bootstrap = \n", "not valid TOML"),
        (
            'security_protocol = "SASL_SSL"\n',
            "needs sasl_username (ADP_SASL_USERNAME) and sasl_password",
        ),
        (
            'security_protocol = "TLS"\n',
            "security_protocol (ADP_SECURITY_PROTOCOL): Input should be",
        ),
        ('ssl_certfile = "c.pem"\n', "ssl_certfile and ssl_keyfile go together"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path, content, message):
    config = tmp_path / "adp.toml"
    config.write_text(content)
    with pytest.raises(SettingsError, match=re.escape(message)):
        settings(config=config)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        settings(config=tmp_path / "nope.toml")


def test_password_never_prints(monkeypatch):
    monkeypatch.setenv("ADP_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ADP_SASL_USERNAME", "alice")
    monkeypatch.setenv("ADP_SASL_PASSWORD", "hunter2-very-secret")
    s = settings()
    for text in (str(s), repr(s), s.describe(), s.model_dump_json(), str(s.model_dump())):
        assert "hunter2" not in text
    assert s.describe() == "127.0.0.1:9092 (SASL_SSL as alice)"


def test_client_options_carry_security(tmp_path, monkeypatch):
    ca = self_signed_ca(tmp_path)
    monkeypatch.setenv("ADP_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ADP_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("ADP_SASL_USERNAME", "alice")
    monkeypatch.setenv("ADP_SASL_PASSWORD", "pw")
    monkeypatch.setenv("ADP_SSL_CAFILE", str(ca))
    # a bare bootstrap string means: the environment's settings with this bootstrap
    options = clients.client_options("h:1", client_id="adp-test")
    assert options["bootstrap_servers"] == "h:1" and options["client_id"] == "adp-test"
    assert options["security_protocol"] == "SASL_SSL"
    assert (
        options["sasl_mechanism"],
        options["sasl_plain_username"],
        options["sasl_plain_password"],
    ) == ("SCRAM-SHA-512", "alice", "pw")
    assert options["ssl_context"].check_hostname
    faust = clients.faust_settings("h:1,h:2")
    assert faust["broker"] == ["kafka://h:1", "kafka://h:2"]
    creds = faust["broker_credentials"]
    assert (creds.username, creds.password, creds.mechanism.value, creds.protocol.value) == (
        "alice",
        "pw",
        "SCRAM-SHA-512",
        "SASL_SSL",
    )
    assert faust["producer_max_request_size"] == 32 * 2**20
    # Faust fetches little per partition (so one topic's backlog cannot hold back the others);
    # a larger record still arrives (KIP-74)
    assert faust["consumer_max_fetch_size"] == clients.FAUST_FETCH_BYTES < 32 * 2**20
    monkeypatch.setenv("ADP_CLIENT_ID", "team-a")
    assert clients.client_options("h:1", client_id="adp-test")["client_id"] == "team-a"


def test_missing_ca_file_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ADP_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("ADP_SSL_CAFILE", str(tmp_path / "missing.pem"))
    with pytest.raises(clients.KafkaClientError, match=r"ssl_cafile .*missing.pem does not exist"):
        clients.producer()


def test_plaintext_needs_nothing_more():
    options = clients.client_options(None)
    assert options == {
        "bootstrap_servers": "127.0.0.1:9092",
        "client_id": "adp",
        "security_protocol": "PLAINTEXT",
    }
    assert "broker_credentials" not in clients.faust_settings(None)


@pytest.mark.parametrize("command", KAFKA_COMMANDS, ids=" ".join)
def test_every_kafka_command_has_the_shared_options(command):
    assert command[0] in COMMANDS
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for flag in ("-b, --bootstrap-server, --bootstrap", "--config"):
        assert flag in result.output, (command, result.output)


def test_bad_settings_are_one_line_usage_errors(tmp_path):
    config = tmp_path / "adp.toml"
    config.write_text('security_protocol = "SASL_SSL"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "adp", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "needs sasl_username" in proc.stderr and "Traceback" not in proc.stderr


def self_signed_ca(folder: Path) -> Path:
    """A throwaway self-signed certificate, loaded only as a trust anchor."""
    cert = folder / "ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(folder / "ca.key"),
            "-out",
            str(cert),
            "-subj",
            "/CN=adp-test-ca",
            "-days",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    return cert
