"""django-prometheus' request metrics, the same families and labels, at a cached page's price.

Its two middlewares ran on every request for about a quarter of a cached API page's time
(cProfile of a hit through the WSGI handler): `metric.labels(...)` takes a lock and builds
a key on each of its six calls a request, and `request.headers` is built (every META
entry renamed) to read two headers. Here, in the After middleware, the labelled children
are looked up once per label values and kept (prometheus_client returns the same child
for the same values, so what is counted does not change; the values are few: views,
methods, statuses), the two headers are read from META, and a response's charset (a
regular expression on its Content-Type at each read) is read once. The rest is
django-prometheus' own code; the two methods written out here are its 2.5.0's
(requirements.txt pins it), with the same metrics, labels and values.
"""

import threading

from django_prometheus import middleware
from django_prometheus.utils import Time, TimeSince


class _Children:
    """metric → label values → child, shared by every instance (the metrics are global)."""

    def __init__(self):
        self._children: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def get(self, metric, labels: dict):
        key = (id(metric), *labels.items())
        child = self._children.get(key)
        if child is None:
            child = metric.labels(**labels)
            with self._lock:
                self._children[key] = child
        return child


_CHILDREN = _Children()
_ABSENT = object()


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    """In MIDDLEWARE instead of django-prometheus' own (its Before middleware, two plain
    counters, is used as it is)."""

    def label_metric(self, metric, request, response=None, **labels):
        return _CHILDREN.get(metric, labels) if labels else metric

    def process_request(self, request):
        """django-prometheus' own, reading the two headers from META."""
        meta = request.META
        method = self._method(request)
        self.label_metric(self.metrics.requests_by_method, request, method=method).inc()
        transport = self._transport(request)
        self.label_metric(self.metrics.requests_by_transport, request, transport=transport).inc()
        if meta.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
            self.label_metric(self.metrics.requests_ajax, request).inc()
        content_length = int(meta.get("CONTENT_LENGTH") or 0)
        self.label_metric(self.metrics.requests_body_bytes, request).observe(content_length)
        request.prometheus_after_middleware_event = Time()

    def process_response(self, request, response):
        """django-prometheus' own, reading the view's name and the charset once."""
        method = self._method(request)
        name = self._get_view_name(request)
        status = str(response.status_code)
        metrics = self.metrics
        self.label_metric(metrics.responses_by_status, request, response, status=status).inc()
        self.label_metric(
            metrics.responses_by_status_view_method,
            request,
            response,
            status=status,
            view=name,
            method=method,
        ).inc()
        charset = getattr(response, "charset", _ABSENT)
        if charset is not _ABSENT:
            self.label_metric(
                metrics.responses_by_charset, request, response, charset=str(charset)
            ).inc()
        if getattr(response, "streaming", False):
            self.label_metric(metrics.responses_streaming, request, response).inc()
        if hasattr(response, "content"):
            self.label_metric(metrics.responses_body_bytes, request, response).observe(
                len(response.content)
            )
        if hasattr(request, "prometheus_after_middleware_event"):
            self.label_metric(
                metrics.requests_latency_by_view_method,
                request,
                response,
                view=name,
                method=request.method,
            ).observe(TimeSince(request.prometheus_after_middleware_event))
        else:
            self.label_metric(metrics.requests_unknown_latency, request, response).inc()
        return response
