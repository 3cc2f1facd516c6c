"""Kafka plumbing shared by aiokafka and faust code alike."""
