from drs.cli import main

raise SystemExit(main())
