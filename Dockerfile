# The sms-adapter image: `sms-adapter serve` by default; `sms-adapter emulator` too.
FROM python:3.11-slim

# No .pyc files in the image, and log lines leave at once.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY adapter ./adapter
COPY bots ./bots
# The exact versions of constraints.txt, never whatever is newest on the day of the build
# (refresh them with tools/refresh-constraints).
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --system --home-dir /app --shell /usr/sbin/nologin adapter \
    && mkdir /data && chown adapter /data

# Not root. /data is where an SQLite store can live (SMS_ADAPTER_DATABASE=/data/...);
# with PostgreSQL nothing is written inside the container.
USER adapter
EXPOSE 8000
CMD ["sms-adapter", "serve", "--host", "0.0.0.0", "--port", "8000"]
