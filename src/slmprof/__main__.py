from slmprof.cli import main

raise SystemExit(main())
