from gossiplab.cli import main

raise SystemExit(main())
