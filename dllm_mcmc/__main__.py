from dllm_mcmc.cli import main

raise SystemExit(main())
