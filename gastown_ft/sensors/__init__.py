"""Sensors and schedules: placeholder until the automation work fills it."""

sensors: list = []
schedules: list = []
automation_jobs: list = []
