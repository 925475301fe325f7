from flareport_cli.main import main

raise SystemExit(main())
