"""Optional helpers for task code: :class:`CircuitBreaker` (on pybreaker)."""

from offload.extras.circuit_breaker import CircuitBreaker

__all__ = ["CircuitBreaker"]
