"""Fakes for tests: a real fake upstream HTTP server speaking the OpenAI and Anthropic wires."""
