"""(package filled by its issue)"""
