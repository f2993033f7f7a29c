from scenetune.cli import main

raise SystemExit(main())
