from m365_smtp_exporter.cli import main

raise SystemExit(main())
