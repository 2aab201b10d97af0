"""Tests of the loopback stand-ins."""
