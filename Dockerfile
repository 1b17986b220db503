# The cropcore dashboard on the simulated demo: docker build -t cropcore . && docker run -p 8501:8501 cropcore
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CROPCORE_DATA=/app/data \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

RUN useradd --create-home --uid 1000 cropcore
WORKDIR /app

# CPU-only torch at the exact pin first (the default index would pull the CUDA build), then the rest.
COPY requirements.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==$(sed -n 's/^torch==//p' requirements.txt)" \
    && pip install -r requirements.txt

COPY pyproject.toml README.md ./
COPY cropcore ./cropcore
COPY dashboard ./dashboard
RUN pip install --no-deps -e . \
    && mkdir -p "$CROPCORE_DATA" && chown -R cropcore:cropcore /app

USER cropcore
# The demo (official layout, simulated) is generated at build time so the first page opens at once.
RUN cropcore demo

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).status == 200 else 1)"
CMD ["streamlit", "run", "dashboard/app.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
