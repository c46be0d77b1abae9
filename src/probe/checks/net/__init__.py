"""Protocol helpers of the built-in checks: connections and TLS facts (``conn``), HTTP/1.1 (``http1``),
HTTP/2 through httpx (``httpclient``), HTTP expectations (``http_expect``), DNS (``dnswire``, ``dnsclient``),
SQL drivers (``sqldrivers``). Not check types themselves."""
