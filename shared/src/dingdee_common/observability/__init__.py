"""Logging, metrics, health endpoints and tracing shared by every service."""
