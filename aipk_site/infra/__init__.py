"""Infrastructure below both apps: the error family, the shared-state store and its
atomic runner, audit recording, logging context, client IP, the metrics registry and
readiness. Both apps and the gateway import it; it imports neither app (nor the
gateway), and it holds no business rule of its own."""
