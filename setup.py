"""Packaging for robust_soups: every field comes from settings.ini, the single source nbdev also reads."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

config = ConfigParser(delimiters=['='])
config.read(Path(__file__).parent / 'settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable',
            '6 - Mature', '7 - Inactive']
license_name, license_classifier = licenses[cfg['license']]
readme = Path(__file__).parent / 'README.md'

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=readme.read_text(encoding='utf-8') if readme.exists() else '',
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    url=cfg['git_url'],
    license=license_name,
    keywords=cfg['keywords'].split(),
    classifiers=[
        f"Development Status :: {statuses[int(cfg['status']) - 1]}",
        f"Intended Audience :: {cfg['audience']}",
        f'License :: {license_classifier}',
        f"Natural Language :: {cfg['language']}",
        'Programming Language :: Python :: 3',
        f"Programming Language :: Python :: {cfg['min_python']}",
    ],
    python_requires=f">={cfg['min_python']}",
    packages=setuptools.find_packages(include=[cfg['lib_name'], f"{cfg['lib_name']}.*"]),
    include_package_data=True,
    package_data={cfg['lib_name']: ['assets/*', 'configs/*']},
    install_requires=cfg['requirements'].split(),
    extras_require={'dev': cfg['dev_requirements'].split()},
    entry_points={'console_scripts': cfg['console_scripts'].split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
