"""hexcast on Chalice: this file only wires blueprints (code lives in chalicelib/)."""

from chalice import Chalice

from chalicelib.api import campaigns, devices, geofences, health, pings, weather

app = Chalice(app_name="hexcast")
app.debug = False
app.api.binary_types = []

app.register_blueprint(health.bp)
app.register_blueprint(geofences.bp)
app.register_blueprint(devices.bp)
app.register_blueprint(pings.bp)
app.register_blueprint(campaigns.bp)
app.register_blueprint(weather.bp)
