"""The dashboard: web pages behind the API's tokens (the map, the job list, a job)."""
