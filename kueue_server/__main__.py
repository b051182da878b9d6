from kueue_server.main import main

raise SystemExit(main())
