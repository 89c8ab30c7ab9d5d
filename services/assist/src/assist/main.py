"""`python -m assist.main --port N`: run the service with uvicorn."""

from shared.cli_run import run

if __name__ == "__main__":
    run("assist.app:create_app")
