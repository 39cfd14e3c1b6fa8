"""hexcast on Chalice: this file only wires middleware and blueprints (code lives in chalicelib/)."""

from chalice import Chalice

from chalicelib.api import campaigns, devices, geofences, health, maintenance, observability, openapi, pings, weather

from chalicelib.api.common import error_shape  # the HTTP middleware below

app = Chalice(app_name="hexcast")
app.debug = False
app.api.binary_types = []

# Every entry point (HTTP, SQS, schedules): JSON logs with the request id, EMF metrics.
app.register_middleware(observability.observe, "all")
# Chalice's own errors (405 for a method a path lacks, say) in the documented error body.
app.register_middleware(error_shape, "http")

app.register_blueprint(health.bp)
app.register_blueprint(openapi.bp)
app.register_blueprint(geofences.bp)
app.register_blueprint(devices.bp)
app.register_blueprint(pings.bp)
app.register_blueprint(campaigns.bp)
app.register_blueprint(weather.bp)
app.register_blueprint(maintenance.bp)
