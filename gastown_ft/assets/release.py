"""Release assets (group `release`): placeholder until the export work fills it."""

release_assets: list = []
