"""`python -m quantcore.models [MODEL.gguf] [--windows N]`: perplexity, tokens/s and weight memory."""

from quantcore.models.evaluate import main

raise SystemExit(main())
