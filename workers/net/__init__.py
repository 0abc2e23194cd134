"""Requests to hosts someone else chose (image URLs, webhooks, alert receivers): the SSRF guard
(`guard`), GET with redirects (`fetch`) and POST (`post`). Standard library only."""
