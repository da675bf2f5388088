"""What `deploy/` ships, checked without Docker: the Compose file, the proxy, Prometheus and
Grafana configs."""

from pathlib import Path

DEPLOY = Path(__file__).parents[2] / "deploy"
