"""The portal's routers, one per area (mounted under PORTAL_ROOT_PATH by :func:`labeling.portal.app.create_app`)."""
