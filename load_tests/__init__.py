"""Load tests and the side-by-side benchmark (Locust, wrk, and the Flask + gunicorn baseline)."""
