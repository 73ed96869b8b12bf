"""The session lives on a registered plugin object; the fixtures come from rig.fixtures modules."""

import rig.plugin

pytest_plugins = ["pytester"]


def test_the_session_is_on_a_registered_plugin_object(pytester):
    pytester.makepyfile(
        """
        from rig.plugin import PLUGIN_KEY, SESSION_KEY

        def test_session(request, rig):
            plugin = request.config.pluginmanager.get_plugin("rig-session")
            assert plugin is request.config.stash[PLUGIN_KEY]
            assert plugin.session is request.config.stash[SESSION_KEY] is rig
            assert rig.events is plugin.session.events
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)


def test_fixtures_are_plugins_of_their_own_not_reexports(pytester):
    for name in ("table", "check", "record", "station", "force_meter", "plc"):
        assert not hasattr(rig.plugin, name)
    result = pytester.runpytest("--fixtures")
    out = result.stdout.str()
    for module in ("station", "table", "instruments", "record"):
        assert f"fixtures defined from rig.fixtures.{module} " in out
