"""Tests for pyaddprocs.

This directory is a package so that worker processes can import
``tests.worker_functions`` by name when a test sends them one of its functions.
"""
