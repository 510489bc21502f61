"""`gastown-ft serve`: the promoted model as an OpenAI-compatible endpoint on 127.0.0.1.

selection.py decides which model directory to serve; engine.py loads it and generates; protocol.py
and tool_calls.py speak the OpenAI wire format; app.py is the Starlette app uvicorn runs.
"""
