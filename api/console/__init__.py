"""The console: web pages for support staff, team leads and operators, served by the API."""
