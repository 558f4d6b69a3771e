"""Orthanc access: the REST client, the one configuration generator, connection settings from the
environment, upload, and the local stack (Orthanc + PostgreSQL on loopback, the product's embedded default).
"""
