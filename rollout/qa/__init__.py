"""QA data in the navigation batch format: LLaVA-style video/image QA, generated scene QA, interleaved image-text."""
