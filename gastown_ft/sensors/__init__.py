"""Sensors, schedules and the jobs they start, collected by gastown_ft.definitions.

Built once when the code location loads, from the [automation] section in force then (a config
that cannot be read gives the defaults and a log line, never a failed load). See docs: automation.
"""

from gastown_ft.sensors.common import automation_config_at_load
from gastown_ft.sensors.dolt import dolt_sensor
from gastown_ft.sensors.town import town_sensors
from gastown_ft.sensors.training import corpus_refresh_job, make_retrain_sensor, make_schedules, retrain_job

_automation = automation_config_at_load()

sensors: list = [*town_sensors(_automation), dolt_sensor(_automation), make_retrain_sensor(_automation)]
schedules: list = make_schedules(_automation)
automation_jobs: list = [retrain_job, corpus_refresh_job]
