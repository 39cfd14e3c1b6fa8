"""Transitional name of :class:`chalicelib.store.memory_weather.MemoryWeather`
(two tests mix it into a store of their own); remove at the merge."""

from chalicelib.store.memory_weather import MemoryWeather as WeatherMemoryMixin

__all__ = ["WeatherMemoryMixin"]
