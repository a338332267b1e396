# tripline: slim, non-root, configured by environment (TRIPLINE__SECTION__KEY), secrets too.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE supervisor.py messages.py ./
COPY actors actors
COPY pipeline pipeline
COPY conf conf
COPY tripline tripline
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home tripline
USER tripline
ENV PYTHONUNBUFFERED=1 \
    TRIPLINE_LOG_FORMAT=json \
    TRIPLINE__HTTP__HOST=0.0.0.0
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["tripline"]
CMD ["run"]
