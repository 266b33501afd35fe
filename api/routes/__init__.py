"""HTTP routes: parse the request, delegate, return JSON."""
