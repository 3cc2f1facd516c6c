"""The web console (issue #17): flows drawn from the transformer's compiled flows, live counts,
"where is my approval?", try-a-mapping and dead-letter triage with the CLI's replay engine."""
