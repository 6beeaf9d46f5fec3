"""The LLM wing: the deployment (deployment.py), its OpenAI mapping, choices, tools and tool parsers,
adapters, and the engines behind one protocol (engines/).

Empty on purpose: importing a light module here (tool_parsers, openai_mapping) must not load the
deployment and its Ray and engine stack.
"""
