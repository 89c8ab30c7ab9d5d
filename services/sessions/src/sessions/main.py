"""`python -m sessions.main --port N`: run the service and its gateway with uvicorn."""

from shared.cli_run import run

if __name__ == "__main__":
    run("sessions.app:create_app")
