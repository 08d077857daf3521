from railguard.cli import main

raise SystemExit(main())
