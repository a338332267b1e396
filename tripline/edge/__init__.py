"""The edge: HTTP, its OpenAPI document and guards, the agent's page, the dashboard, the CLI."""
