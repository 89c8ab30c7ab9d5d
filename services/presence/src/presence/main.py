"""`python -m presence.main --port N`: run the service with uvicorn."""

from shared.cli_run import run

if __name__ == "__main__":
    run("presence.app:create_app")
