from gallery.cli import main

raise SystemExit(main())
