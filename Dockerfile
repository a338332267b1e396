# tripline: slim, non-root, configured by environment (TRIPLINE__SECTION__KEY), secrets too.
# BASE: python:3.11-slim from a registry, or any Debian-like image with Python 3.11 and its venv
# module (scripts/image makes a Debian one with mmdebstrap, no registry). The build args
# PIP_NO_INDEX=1 and PIP_FIND_LINKS=<wheelhouse> make the install air-gapped: docs/deployment.md,
# "An air-gapped build".
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
WORKDIR /src
COPY pyproject.toml README.md LICENSE supervisor.py messages.py ./
COPY actors actors
COPY pipeline pipeline
COPY conf conf
COPY tripline tripline
# A venv rather than the interpreter's own site-packages: the same path on every base (Debian's
# python3 reads /usr/local/lib/python3.11/dist-packages, python:3.11-slim's site-packages) and
# nothing of the base's own Python packages mixed in.
RUN python3 -m venv /opt/tripline \
    && /opt/tripline/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM ${BASE}
COPY --from=build /opt/tripline /opt/tripline
RUN useradd --system --uid 10001 --no-create-home tripline
USER tripline
ENV PATH=/opt/tripline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TRIPLINE_LOG_FORMAT=json \
    TRIPLINE__HTTP__HOST=0.0.0.0
EXPOSE 8080
# The port from the environment: with `--network host` a container often runs on another one.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import os,sys,urllib.request as u; p=os.environ.get('TRIPLINE__HTTP__PORT','8080'); sys.exit(0 if u.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["tripline"]
CMD ["run"]
