# syntax=docker/dockerfile:1
# Build stage: install perpbot and its dependencies into a self-contained virtualenv.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Every dependency comes from the hash-checked locks (make lock regenerates them): a rebuild
# installs the same bytes. The build backend lives in its own venv and does not ship.
# `--build-arg EXTRA_LOCK=research.lock` adds the research extra (`perpbot optimize` workers; the
# compose `optimize` profile): the runtime pins plus Optuna, numpy, pyarrow and pg8000.
ARG EXTRA_LOCK=""
COPY requirements/runtime.lock requirements/build.lock requirements/research.lock ./requirements/
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes -r requirements/build.lock \
 && python -m venv /opt/perpbot \
 && /opt/perpbot/bin/pip install --require-hashes -r requirements/runtime.lock \
 && if [ -n "$EXTRA_LOCK" ]; then /opt/perpbot/bin/pip install --require-hashes -r "requirements/$EXTRA_LOCK"; fi
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/perpbot/bin/pip install --no-deps /wheels/*.whl

# Runtime stage: no compilers, no sources, no secrets; runs as an unprivileged user.
FROM python:3.11-slim-bookworm
ENV PATH=/opt/perpbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PERPBOT_STATE_DIR=/var/lib/perpbot \
    PERPBOT_TELEMETRY__LOG_FORMAT=json
RUN groupadd --system --gid 10001 perpbot \
 && useradd --system --uid 10001 --gid perpbot --home-dir /var/lib/perpbot --shell /usr/sbin/nologin perpbot \
 && mkdir -p /var/lib/perpbot && chown perpbot:perpbot /var/lib/perpbot
COPY --from=build /opt/perpbot /opt/perpbot
USER 10001:10001
WORKDIR /var/lib/perpbot
VOLUME ["/var/lib/perpbot"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["perpbot", "health"]
ENTRYPOINT ["perpbot"]
CMD ["run"]
