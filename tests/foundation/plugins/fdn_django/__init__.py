"""A Django app for the Django integration test."""
