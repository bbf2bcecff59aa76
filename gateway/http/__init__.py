"""The HTTP surface: OpenAI-compatible routes, health, and the reply writer."""
