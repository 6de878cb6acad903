"""tilearena: LLM ops in Triton, Helion, CuTe DSL and TileLang behind one interface."""
