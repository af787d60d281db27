"""Reporting: subscribers to the event stream that render a run for people and for CI."""
