"""Pure geometry: GeoJSON parsing and validation, H3 covers, exact fence shapes.

Nothing in this package imports boto3, chalice or ``os.environ``.
Coordinates are ``(lat, lng)`` in function signatures; GeoJSON order
``(lng, lat)`` appears only where GeoJSON or shapely geometries are handled.
"""
