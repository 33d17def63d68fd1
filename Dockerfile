# The platform image: every `adp` command (runtimes, aggregator, produce, replay, ...).
#   docker build -t agent-data-platform .
#   docker run --rm agent-data-platform --help
# Stage 1 builds the wheel; stage 2 installs that wheel (not the checkout), so the image holds
# exactly what `pip install agent-data-platform` holds: the adp package with its schemas and site.
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
RUN pip install --no-cache-dir -q "build>=1.2"
COPY . /src
# SOURCE_DATE_EPOCH: the same sources give the same wheel, byte for byte, so the layers below
# stay cached when only files outside the package changed.
RUN SOURCE_DATE_EPOCH=315532800 python -m build --wheel --outdir /dist /src
# The runtime dependencies alone, for the image's dependency layer: its cache then holds across
# changes to the rest of pyproject.toml (test extras, tool settings).
RUN mkdir /deps && cp constraints.txt /deps/ \
 && python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/deps/requirements.txt', 'w').write('\n'.join(d) + '\n')"

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# bubblewrap: the python sandbox; it runs Debian's own /usr/bin/python3 (package python3),
#   never this image's /usr/local Python, so LLM-written code cannot reach the platform's venv.
# chromium + fonts: the web runtime (Playwright drives Debian's Chromium, no browser download);
#   libatomic1: Playwright's own node driver needs it, and the slim base lacks it.
# tini: a real pid 1, so SIGTERM reaches `adp` and sandbox children are reaped.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      bubblewrap python3 chromium libatomic1 fonts-liberation fonts-noto-core fonts-noto-cjk \
      fonts-noto-color-emoji ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, in their own layer, at the versions of constraints.txt: source edits then
# rebuild only the layers below.
COPY --from=wheel /deps/requirements.txt /deps/constraints.txt /tmp/deps/
RUN pip install -q -c /tmp/deps/constraints.txt -r /tmp/deps/requirements.txt && rm -rf /tmp/deps

# The platform itself, from the wheel built above.
COPY --from=wheel /dist/ /tmp/dist/
RUN pip install -q --no-deps /tmp/dist/*.whl && rm -rf /tmp/dist

# The code sandbox's own Python environment (a venv of Debian's python3 with numpy, pandas,
# matplotlib, scipy, scikit-learn, sympy) at a fixed path every user can read; ADP_SANDBOX_ENV
# points the runtimes at it. Another list: --build-arg SANDBOX_REQUIREMENTS=<file in the context>.
ARG SANDBOX_REQUIREMENTS=runtimes/tools/sandbox/requirements.txt
COPY ${SANDBOX_REQUIREMENTS} /tmp/sandbox-requirements.txt
RUN ADP_SANDBOX_REQUIREMENTS=/tmp/sandbox-requirements.txt adp sandbox build --into /opt/adp-sandbox \
 && rm -rf /tmp/sandbox-requirements.txt /opt/wheels

# Non-root. Trade-off: bubblewrap then creates its user namespace unprivileged, which needs the
# container to allow it: the sandboxed runtimes run with seccomp, systempaths and apparmor
# unconfined and no capability (compose/docker-compose.yml says why each). As root (`--user 0`)
# the sandbox would also start each run as its own throwaway uid, but a root runtime is a bigger
# target if the sandbox is ever escaped; the non-root user plus the sandbox's own per-run user
# namespace and rlimits is the default here.
RUN useradd --create-home --uid 10001 --user-group adp \
 && mkdir -p /data/adp /data/trajectories \
 && chown -R adp:adp /data
USER adp

ENV ADP_CHROMIUM=/usr/bin/chromium \
    ADP_SANDBOX_ENV=/opt/adp-sandbox \
    ADP_HOME=/data/adp \
    ADP_OUTPUT_DIR=/data/trajectories \
    ADP_METRICS_PORT=8001

EXPOSE 8001
ENTRYPOINT ["/usr/bin/tini", "--", "adp"]
CMD ["--help"]
